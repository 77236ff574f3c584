//! JDF 1.4 tickets: a `Combined` node for digital printing whose `RunList` names the
//! dropped files, with the media, amount, sides, colour model, customer and due date
//! the job side gave, as the JDF resources express them. Its process types are the
//! ones a DFE's digital-print node takes (sides belong to LayoutPreparation).

use super::xml::Element;
use super::{instructions, number, points, relative_url, TicketFile};
use crate::protocol::{Delivery, Sides};

const NAMESPACE: &str = "http://www.CIP4.org/JDFSchema_1_1";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
const PROCESSES: &str = "LayoutPreparation Imposition Interpreting Rendering DigitalPrinting";

pub(super) fn render(delivery: &Delivery, files: &[TicketFile<'_>]) -> Vec<u8> {
    let job = &delivery.job;
    let ticket = job.ticket.clone().unwrap_or_default();
    let mut resources = Vec::new();
    let mut links = Vec::new();
    let mut add = |resource: Element, link: Element| {
        resources.push(resource);
        links.push(link);
    };
    if job.customer.is_some() || job.order_number.is_some() {
        add(
            resource("CustomerInfo", "r_customer", "Parameter", "Available")
                .attr_some("CustomerOrderID", job.order_number.as_deref())
                .attr("CustomerJobName", &job.name)
                .children(job.customer.as_deref().map(|customer| {
                    Element::new("Contact")
                        .attr("ContactTypes", "Customer")
                        .child(Element::new("Company").attr("OrganizationName", customer))
                })),
            link("CustomerInfoLink", "r_customer", "Input"),
        );
    }
    if let Some(due) = ticket.due {
        let due = due
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        add(
            resource("NodeInfo", "r_node", "Parameter", "Available").attr("End", due),
            link("NodeInfoLink", "r_node", "Input"),
        );
    }
    add(run_list(files), link("RunListLink", "r_runlist", "Input"));
    // DigitalPrinting's one required input, empty: the device's defaults apply.
    add(
        resource(
            "DigitalPrintingParams",
            "r_printing",
            "Parameter",
            "Available",
        ),
        link("DigitalPrintingParamsLink", "r_printing", "Input"),
    );
    if let Some(media) = &ticket.media {
        let dimension = media
            .width_mm
            .zip(media.height_mm)
            .map(|(width, height)| format!("{} {}", points(width), points(height)));
        add(
            resource("Media", "r_media", "Consumable", "Available")
                .attr_some("DescriptiveName", media.name.as_deref())
                .attr_some("Dimension", dimension)
                .attr_some("Weight", media.weight_gsm.map(number)),
            link("MediaLink", "r_media", "Input"),
        );
    }
    if let Some(sides) = ticket.sides {
        // Flipped about the sheet's Y axis: head to head, as a book turns.
        let sides = match sides {
            Sides::OneSided => "OneSidedFront",
            Sides::TwoSided => "TwoSidedFlipY",
        };
        add(
            resource(
                "LayoutPreparationParams",
                "r_layout",
                "Parameter",
                "Available",
            )
            .attr("Sides", sides),
            link("LayoutPreparationParamsLink", "r_layout", "Input"),
        );
    }
    if let Some(model) = ticket.color.as_deref().and_then(process_color_model) {
        add(
            resource("ColorantControl", "r_colorant", "Parameter", "Available")
                .attr("ProcessColorModel", model),
            link("ColorantControlLink", "r_colorant", "Input"),
        );
    }
    if let Some(amount) = ticket.quantity {
        add(
            resource("Component", "r_component", "Quantity", "Unavailable")
                .attr("ComponentType", "FinalProduct")
                .attr("Amount", amount.to_string()),
            link("ComponentLink", "r_component", "Output").attr("Amount", amount.to_string()),
        );
    }
    Element::new("JDF")
        .attr("xmlns", NAMESPACE)
        .attr("xmlns:xsi", XSI)
        .attr("xsi:type", "Combined")
        .attr("ID", "n_tbot")
        .attr("Type", "Combined")
        .attr("Types", PROCESSES)
        .attr("Category", "DigitalPrinting")
        .attr("JobID", &job.id)
        .attr("JobPartID", "1")
        .attr("Status", "Waiting")
        .attr("Version", "1.4")
        .attr("DescriptiveName", &job.name)
        .children(instructions(delivery).map(|text| {
            Element::new("Comment")
                .attr("Name", "Instruction")
                .text(&text)
        }))
        .child(Element::new("ResourcePool").children(resources))
        .child(Element::new("ResourceLinkPool").children(links))
        .into_document()
}

/// The files, one part of the run list each, in the order the job side gave them.
fn run_list(files: &[TicketFile<'_>]) -> Element {
    let parts = files.iter().enumerate().map(|(index, file)| {
        let spec = Element::new("FileSpec")
            .attr("URL", relative_url(file.path))
            .attr_some("MimeType", is_pdf(file.path).then_some("application/pdf"));
        Element::new("RunList")
            .attr("Run", (index + 1).to_string())
            .child(Element::new("LayoutElement").child(spec))
    });
    resource("RunList", "r_runlist", "Parameter", "Available")
        .attr("PartIDKeys", "Run")
        .children(parts)
}

fn resource(name: &'static str, id: &str, class: &str, status: &str) -> Element {
    Element::new(name)
        .attr("ID", id)
        .attr("Class", class)
        .attr("Status", status)
}

fn link(name: &'static str, id: &str, usage: &str) -> Element {
    Element::new(name).attr("rRef", id).attr("Usage", usage)
}

fn is_pdf(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".pdf")
}

/// JDF's process colour model for the job side's colour word, when JDF has one.
pub(super) fn process_color_model(color: &str) -> Option<&'static str> {
    match color.to_ascii_lowercase().as_str() {
        "cmyk" => Some("DeviceCMYK"),
        "gray" | "grey" => Some("DeviceGray"),
        "rgb" => Some("DeviceRGB"),
        _ => None,
    }
}
